"""Plugin packages used by tests/test_plugin_model.py: installed with pip and tested by their own
test files (run in a subprocess from their own directory), never collected by the main suite."""

collect_ignore_glob = ["*"]
