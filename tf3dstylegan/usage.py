"""How the user starts this package's commands, so that help texts and hints name what works on their machine.

An installed package (wheel or editable) has the console scripts `tf3dstylegan-NAME`; a source checkout also has
the root scripts (`python train.py`); `python -m tf3dstylegan NAME` works everywhere. `tf3dstylegan.cli.run`
records which of the three started this process; library code that names a command asks `command(name)`.
"""
ROOT_SCRIPTS = {"train": "train.py", "generate": "generate.py", "project": "project.py", "dataset": "dataset_tool.py"}
STYLES = ("console", "script", "module")
_style = "console"


def set_style(style):
    """Record how this process was started: 'console' (tf3dstylegan-NAME), 'script' (a root script) or 'module'."""
    global _style
    if style not in STYLES:
        raise ValueError(f"invocation style must be one of {STYLES}, got {style!r}")
    _style = style


def style_of(prog):
    """The style of a program name as cli.run sees it: 'train.py' -> 'script', 'python -m ...' -> 'module'."""
    if prog in ROOT_SCRIPTS.values():
        return "script"
    return "module" if prog.startswith("python -m ") else "console"


def command(name):
    """How to run command `name` the way this process was started, e.g. 'python dataset_tool.py' or
    'tf3dstylegan-dataset'."""
    if _style == "script" and name in ROOT_SCRIPTS:
        return f"python {ROOT_SCRIPTS[name]}"
    if _style == "module":
        return f"python -m tf3dstylegan {name}"
    return f"tf3dstylegan-{name}"


def render(text, name):
    """A help text with `{prog}` replaced by how to run command `name`."""
    return text.replace("{prog}", command(name))
