"""Compiled inference and optimisation steps on JAX: pure functions of the variables' values (Keras'
StatelessScope) under jax.jit, the values passed in at every call, so a later change of weights is always seen."""
import jax
import keras


def _variables(models):
    return [v for model in models for v in model.variables]


def compiled(fn, models=()):
    """fn(*tensors) under jax.jit, with the current values of `models`' variables."""
    variables = _variables(models)

    def pure(values, *args):
        with keras.StatelessScope(state_mapping=list(zip(variables, values, strict=True))):
            return fn(*args)
    jitted = jax.jit(pure)
    return lambda *args: jitted([v.value for v in variables], *args)


def minimizer(loss_fn, variables, optimizer, models=()):
    """step(*args) -> loss: one optimizer step on `variables` (Keras variables) for loss_fn(*args), which may read
    `models`' variables (held constant)."""
    constants = _variables(models)

    def loss_of(values, constant_values, *args):
        mapping = list(zip(variables, values, strict=True)) + list(zip(constants, constant_values, strict=True))
        with keras.StatelessScope(state_mapping=mapping):
            return loss_fn(*args)

    @jax.jit
    def pure_step(values, optimizer_values, constant_values, *args):
        loss, grads = jax.value_and_grad(loss_of)(values, constant_values, *args)
        new_values, new_optimizer_values = optimizer.stateless_apply(optimizer_values, grads, values)
        return loss, new_values, new_optimizer_values

    def step(*args):
        loss, new_values, new_optimizer_values = pure_step([v.value for v in variables],
                                                           [v.value for v in optimizer.variables],
                                                           [v.value for v in constants], *args)
        for var, value in zip(variables + list(optimizer.variables), new_values + new_optimizer_values, strict=True):
            var.assign(value)
        return loss
    return step
