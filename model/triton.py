"""`python -m model.triton`: see model.runtimes.triton."""
from model.runtimes.triton import main

if __name__ == "__main__":
    main()
