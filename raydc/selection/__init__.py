"""Label-free selection of a study's configuration (select.py, consensus.py) and the export of the chosen models
(export.py)."""
