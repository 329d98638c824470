CREATE TABLE marks (student text PRIMARY KEY, mark integer NOT NULL);
INSERT INTO marks VALUES ('ada', 91), ('brian', 78);
