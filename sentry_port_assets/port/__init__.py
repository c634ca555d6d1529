"""Publishing to Port: the API client, the local catalog (an SQLite file with Port's semantics), the
targets both sit behind, and the reconciler that diffs and applies the safety rules for deletes."""
