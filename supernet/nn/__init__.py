"""The networks: the search space as data, its ops and token blocks, the super head and the supernet
(an NNI model space), the plain model a head freezes into, and saving / loading it."""
