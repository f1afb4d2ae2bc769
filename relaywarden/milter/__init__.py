"""The pymilter adapter: the only package that imports pymilter."""
