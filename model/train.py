"""`python -m model.train`: see model.training.train."""
from model.training.train import main

if __name__ == "__main__":
    main()
