-- A tiny teaching database: run once, in one transaction, on the first start.
CREATE TABLE anscombe (
    dataset text NOT NULL,
    x numeric NOT NULL,
    y numeric NOT NULL
);

INSERT INTO anscombe (dataset, x, y) VALUES
    ('I', 10, 8.04), ('I', 8, 6.95), ('I', 13, 7.58), ('I', 9, 8.81), ('I', 11, 8.33),
    ('I', 14, 9.96), ('I', 6, 7.24), ('I', 4, 4.26), ('I', 12, 10.84), ('I', 7, 4.82),
    ('I', 5, 5.68),
    ('II', 10, 9.14), ('II', 8, 8.14), ('II', 13, 8.74), ('II', 9, 8.77), ('II', 11, 9.26),
    ('II', 14, 8.10), ('II', 6, 6.13), ('II', 4, 3.10), ('II', 12, 9.13), ('II', 7, 7.26),
    ('II', 5, 4.74),
    ('III', 10, 7.46), ('III', 8, 6.77), ('III', 13, 12.74), ('III', 9, 7.11),
    ('III', 11, 7.81), ('III', 14, 8.84), ('III', 6, 6.08), ('III', 4, 5.39),
    ('III', 12, 8.15), ('III', 7, 6.42), ('III', 5, 5.73),
    ('IV', 8, 6.58), ('IV', 8, 5.76), ('IV', 8, 7.71), ('IV', 8, 8.84), ('IV', 8, 8.47),
    ('IV', 8, 7.04), ('IV', 8, 5.25), ('IV', 19, 12.50), ('IV', 8, 5.56), ('IV', 8, 7.91),
    ('IV', 8, 6.89);

CREATE INDEX anscombe_dataset ON anscombe (dataset);

CREATE TABLE students_notes (
    id serial PRIMARY KEY,
    written timestamptz NOT NULL DEFAULT now(),
    note text NOT NULL
);
