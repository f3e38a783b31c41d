"""The results of a run as files: perfdata (clusterloader2's format), summary, HTML, compare."""
