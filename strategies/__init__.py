"""Search strategies over the head supernet. Names only here: importing this package stays light
(trial processes import ``strategies.evolution`` and must not pull in Lightning)."""

MULTI_TRIAL = ("evolution", "random")
ONE_SHOT = ("spos", "darts", "gumbel_darts", "proxyless", "enas")
STRATEGIES = MULTI_TRIAL + ONE_SHOT
