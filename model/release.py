"""`python -m model.release`: see model.training.release."""
from model.training.release import main

if __name__ == "__main__":
    main()
