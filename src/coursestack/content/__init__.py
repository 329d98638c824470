"""Course material delivery and three-way updates that never clobber a student's work.

One idea per module: `sources` (folder, zip, git) and `git`, `layout` (where each file
goes), `record` (what was last delivered), `decide` (the three-way rules), `notebooks`
(the cell-level merge), `journal` (an interrupted update completes as a whole),
`report` (plain words per file), `update` (one update, end to end), `command` (the CLI).
Nothing is imported here: the CLI imports `command` at start-up and must stay fast.
"""
