"""One blueprint per resource; schemas beside the views."""
