"""The Processing provider ``geostudio``: one module per algorithm."""
