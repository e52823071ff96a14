"""The MLP training engine: plain functions on tensors, no MLflow, no Prefect.

single.fit trains one model; population.fit trains K models of one shape at once; population.fit_many groups any
list of configs into populations by shape (the NN5 fast path, with a hand-written backward pass). realmlp.fit and
tabm.fit train the RealMLP-style and TabM-style families with autograd, through torchfit.train; realmlp_population.fit
trains K RealMLP-style nets of one shape at once (torch.vmap over the same module), each as realmlp.fit would.
"""
