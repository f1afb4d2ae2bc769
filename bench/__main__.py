"""`python -m bench`: every benchmark in turn."""

from bench import limits

if __name__ == "__main__":
    limits.main()
