"""Scoring candidates with inherited weights (the search state), their costs, and the analysis of
what fine-tuning changed."""
