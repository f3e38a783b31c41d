"""Results on disk: perfdata JSON (clusterloader2's format), summary, HTML, compare."""
