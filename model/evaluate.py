"""`python -m model.evaluate`: see model.training.evaluate."""
from model.training.evaluate import main

if __name__ == "__main__":
    main()
