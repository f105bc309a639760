"""What a study keeps: the Parquet tables and their parts (store.py, parts.py), what each column holds
(columns.py), and pandas views of a study (results.py)."""
