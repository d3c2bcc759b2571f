"""Data: the task table, the three sources (user files, ``$GLUE_DIR``, the hub), tokenisation and the
three roles a task's rows play (fit + selection for searching, train for retraining, dev for the report)."""
