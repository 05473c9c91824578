"""The comparison report: run directory (run) -> tables -> plots -> render (the only writer)."""
