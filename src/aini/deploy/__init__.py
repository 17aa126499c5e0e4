"""One bundle on one Site: observe what runs, plan (plan.py, pure), apply (apply.py),
record what came up (record.py), and explain what did not (diagnose.py)."""
