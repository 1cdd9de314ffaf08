"""One style for every command: absl flags (`--flag_name` or `--flag-name`), generated `--help` (exit 0),
and one line on stderr with a non-zero exit for a bad flag, a bad input or a failed write.

A command is a module with a docstring (its help text), `define_flags(fv)` (absl definitions on the
`flags.FlagValues` it is given) and `main(fv, args)` (the parsed flags and the positional arguments).
`python -m tf3dstylegan NAME`, the console scripts `tf3dstylegan-NAME` and the root scripts all run
commands through `run`. TensorFlow's start-up notices and warnings are shown only with `--verbose`,
which also prints full tracebacks. The dataset command never loads TensorFlow itself (keras, for its progress
bar, may: on its TensorFlow backend, quietly).
"""
import contextlib
import importlib
import os
import re
import sys

from absl import flags

COMMANDS = {
    "train": ("tf3dstylegan.commands.train", "train G and D on a records folder or the demo data"),
    "generate": ("tf3dstylegan.commands.generate", "volumes, style mixing and interpolation from a generator"),
    "project": ("tf3dstylegan.commands.project", "find the latent code of a scan"),
    "dataset": ("tf3dstylegan.commands.dataset", "create, split, inspect and verify TFRecords datasets"),
    "convert": ("tf3dstylegan.commands.convert", "convert an original TF1 snapshot .pkl to .keras files"),
    "metrics": ("tf3dstylegan.commands.metrics", "FID, KID, precision/recall, MMD, MS-SSIM, memorisation"),
    "metrics-weights": ("tf3dstylegan.commands.metrics_weights", "fetch and convert the metric networks' weights"),
}
TENSORFLOW_FREE_COMMANDS = ("tf3dstylegan.commands.dataset",)  # run without quiet_tensorflow's import
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130


class CommandError(Exception):
    """A failure to report as one line (the message names the file or flag and the problem)."""


def flag_error(name, problem):
    """A CommandError for flag `--name`."""
    return CommandError(f"--{name}: {problem}")


def normalize_flag_names(argv):
    """`--noise-mode x` -> `--noise_mode x`: both spellings work; values are left alone."""
    out = list(argv[:1])
    for token in argv[1:]:
        if token.startswith("--") and token != "--":
            name, eq, value = token[2:].partition("=")
            token = f"--{name.replace('-', '_')}{eq}{value}"
        out.append(token)
    return out


@contextlib.contextmanager
def stderr_closed():
    """stderr closed at the file-descriptor level inside the block (C++ start-up logging of TensorFlow's that
    ignores TF_CPP_MIN_LOG_LEVEL: oneDNN, CUDA drivers, CPU features)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def quiet_tensorflow():
    """Load TensorFlow and initialise its devices without their start-up notices, and keep its Python warnings
    out of the output."""
    with stderr_closed():
        import tensorflow as tf
        tf.constant(0)  # initialises the devices (the CUDA driver probe logs here)
    from absl import logging
    logging.set_verbosity(logging.ERROR)
    tf.get_logger().setLevel("ERROR")


def help_text(prog, module, fv):
    doc = (module.__doc__ or "").strip()
    lines = [f"usage: {prog} [flags]", "", doc, "", "flags:"]
    for name in sorted({flag.name for flag in fv._flags().values()}):  # every flag once, by its name
        flag = fv[name]
        default = "" if flag.default is None else f" (default: {flag.default_as_str})"
        lines.append(f"  --{flag.name}: {flag.help}{default}")
    return "\n".join(lines)


def fail(prog, message, code=EXIT_BAD_INPUT):
    """Print `prog: error: message` (first line only) and exit with `code`."""
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", line).strip() for line in str(message).strip().splitlines()]
    lines = [line for line in lines if line]
    if len(lines) > 1 and lines[0].startswith("Exception encountered when calling"):  # Keras wraps the cause
        lines = lines[1:]
    first = lines[0] if lines else "failed"
    print(f"{prog}: error: {first}", file=sys.stderr)
    sys.exit(code)


def run(module_name, argv=None, prog=None):
    """Parse argv for the command module and run it; returns its exit code (0 unless it says otherwise)."""
    argv = list(sys.argv if argv is None else argv)
    prog = prog or os.path.basename(argv[0])
    verbose = "--verbose" in argv[1:]
    if not verbose and module_name not in TENSORFLOW_FREE_COMMANDS:
        quiet_tensorflow()
    module = importlib.import_module(module_name)
    fv = flags.FlagValues()
    module.define_flags(fv)
    flags.DEFINE_boolean("verbose", False, "Show TensorFlow's notices and full tracebacks.", flag_values=fv)
    if any(arg in ("-h", "--help", "--helpshort", "--helpfull") for arg in argv[1:]):
        print(help_text(prog, module, fv))
        return 0
    if hasattr(module, "normalize_argv"):  # a command's own spellings (e.g. dataset's `--base_size 5 6 7`)
        argv = module.normalize_argv(argv)
    try:
        args = fv(normalize_flag_names(argv))[1:]
    except flags.Error as err:
        fail(prog, err)
    try:
        code = module.main(fv, args)
    except KeyboardInterrupt:
        fail(prog, "interrupted", EXIT_INTERRUPTED)
    except (CommandError, ValueError, OSError, RuntimeError) as err:
        if verbose:
            raise
        fail(prog, err)
    return int(code or 0)


def main(argv=None):
    """`python -m tf3dstylegan COMMAND [flags]`."""
    argv = list(sys.argv if argv is None else argv)
    if len(argv) < 2 or argv[1] not in COMMANDS:
        width = max(len(name) for name in COMMANDS) + 2
        lines = [f"  {name:<{width}}{text}" for name, (_, text) in COMMANDS.items()]
        print("usage: python -m tf3dstylegan COMMAND [flags]   (COMMAND --help for its flags)\n\ncommands:\n"
              + "\n".join(lines), file=sys.stdout if len(argv) >= 2 and argv[1] in ("-h", "--help") else sys.stderr)
        return 0 if len(argv) >= 2 and argv[1] in ("-h", "--help") else EXIT_BAD_INPUT
    name, prog = argv[1], os.path.basename(argv[0])
    prog = "tf3dstylegan" if prog in ("__main__.py", "-m") else prog  # `python -m tf3dstylegan`
    return run(COMMANDS[name][0], [f"{prog} {name}"] + argv[2:])


def entry_point(name):
    """A console-script function for command `name` (`tf3dstylegan-NAME`)."""
    def start():
        sys.exit(run(COMMANDS[name][0], [f"tf3dstylegan-{name}"] + sys.argv[1:]))
    start.__name__ = f"{name.replace('-', '_')}_main"
    return start


train = entry_point("train")
generate = entry_point("generate")
project = entry_point("project")
dataset = entry_point("dataset")
convert = entry_point("convert")
metrics = entry_point("metrics")
metrics_weights = entry_point("metrics-weights")


def console_main():
    """The `tf3dstylegan` console script: `tf3dstylegan COMMAND [flags]`."""
    sys.exit(main(["tf3dstylegan"] + sys.argv[1:]))
