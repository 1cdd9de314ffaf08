"""Inference and optimisation steps on PyTorch (eager, autograd)."""
import torch


def compiled(fn, models=()):
    """fn(*tensors) without gradient tracking (PyTorch runs eagerly)."""
    def run(*args):
        with torch.no_grad():
            return fn(*args)
    return run


def minimizer(loss_fn, variables, optimizer, models=()):
    """step(*args) -> loss: one optimizer step on `variables` (Keras variables) for loss_fn(*args)."""
    def step(*args):
        loss = loss_fn(*args)
        grads = torch.autograd.grad(loss, [v.value for v in variables])
        with torch.no_grad():
            optimizer.apply(list(grads), variables)
        return loss.detach()
    return step
