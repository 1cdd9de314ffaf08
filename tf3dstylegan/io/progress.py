"""Progress bars that suit where the output goes: redrawn live on a terminal, one plain line at the end in a log
file (Keras' live bar writes ANSI colour codes and backspaces, which a file must not get)."""
import sys


def on_terminal() -> bool:
    """Whether standard output is a terminal (live progress bars) rather than a file or pipe."""
    return sys.stdout.isatty()


def progress_bar(total, unit_name="step", stateful_metrics=None, interval=0.5):
    """A keras Progbar over `total` units: live on a terminal, else one plain summary line when it completes."""
    import keras
    return keras.utils.Progbar(total, verbose=1 if on_terminal() else 2, unit_name=unit_name,
                               stateful_metrics=stateful_metrics, interval=interval)
