"""The package works anywhere: the wheel carries every preset, and an installed copy outside the source tree
runs the README's Python example and the console scripts; the test suite reads nothing outside the repository."""
import ast
import shutil
import site
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "tf3dstylegan"

API_EXAMPLE = """
import sys, tf3dstylegan, tensorflow as tf
assert tf3dstylegan.__file__.startswith(sys.prefix), (tf3dstylegan.__file__, sys.prefix)  # the wheel's copy
assert set(tf3dstylegan.available_presets()) >= {"demo", "2mm-fd16", "2mm-fd96", "1mm-fd16"}
G, D = tf3dstylegan.build_networks("demo")
volumes = G(tf.random.normal([2, G.latent_size]), truncation_psi=0.7, noise_mode="const")
print(tuple(volumes.shape), tuple(D(volumes).shape))
"""


@pytest.mark.slow
def test_wheel_carries_the_presets_and_works_outside_the_tree(tmp_path):
    source = tmp_path / "source"  # a copy, so that the build leaves nothing in the tree and sees nothing stale
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(".git", "build", "dist", "runs", "__pycache__",
                                                                "*.egg-info", ".pytest_cache", "tests"))
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(tmp_path / "dist"), str(source)], capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr[-2000:]
    wheel = next((tmp_path / "dist").glob("tf3dstylegan-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    presets = {p.name for p in (PACKAGE / "configs").glob("*.json")}
    assert presets and {f"tf3dstylegan/configs/{name}" for name in presets} <= names
    assert not any(name.startswith("tests/") for name in names)
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    # The dependencies from the environment running the suite (a venv's base interpreter may lack them): its
    # site-packages as plain path entries, so that its own .pth files (this checkout's editable install) stay out.
    target = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                            capture_output=True, text=True, check=True).stdout.strip()
    outer = [p for p in site.getsitepackages() if Path(p).is_dir()]
    (Path(target) / "suite-dependencies.pth").write_text("\n".join(outer) + "\n")
    install = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q",
                              str(wheel)], capture_output=True, text=True, timeout=600)
    assert install.returncode == 0, install.stderr[-2000:]
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    api = subprocess.run([str(python), "-c", API_EXAMPLE], cwd=outside, capture_output=True, text=True, timeout=600)
    assert api.returncode == 0, api.stderr[-2000:]
    assert "(2, 20, 24, 28, 1) (2, 1)" in api.stdout
    help_text = subprocess.run([str(env_dir / "bin" / "tf3dstylegan-train"), "--help"], cwd=outside,
                               capture_output=True, text=True, timeout=300)
    assert help_text.returncode == 0 and "--cfg" in help_text.stdout and "--kimg" in help_text.stdout


def test_the_suite_reads_nothing_outside_the_repository():
    for path in set((REPO / "tests").glob("*.py")) - {Path(__file__)}:
        text = path.read_text()
        assert "shared" + "/fixtures" not in text and '"shared"' not in text and "parent.parent.parent" not in text, \
            path.name
    assert (REPO / "tests" / "data" / "tf1-2mm-fd16" / "network.pkl").is_file()


def _imports(path):
    """Modules a source file imports (absolute names), at any depth of the file."""
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def _module_name(path):
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _package_graph():
    graph = {}
    for path in PACKAGE.rglob("*.py"):
        graph[_module_name(path)] = {m for m in _imports(path) if m.startswith("tf3dstylegan")}
    return graph


def test_inference_never_imports_training():
    graph = _package_graph()
    for module, imported in graph.items():
        if module.startswith(("tf3dstylegan.generate", "tf3dstylegan.projector", "tf3dstylegan.metrics",
                              "tf3dstylegan.loading", "tf3dstylegan.legacy", "tf3dstylegan.networks",
                              "tf3dstylegan.io", "tf3dstylegan.data", "tf3dstylegan.checkpoints")):
            assert not any(m.startswith("tf3dstylegan.training") for m in imported), module


def test_no_import_cycle_between_modules():
    graph = _package_graph()
    known = set(graph)

    def resolve(name):  # 'tf3dstylegan.io.write_png' -> 'tf3dstylegan.io'
        while name and name not in known:
            name = name.rpartition(".")[0]
        return name

    edges = {m: {resolve(i) for i in imported if resolve(i) and resolve(i) != m} for m, imported in graph.items()}
    for package in [m for m in known if (PACKAGE / Path(*m.split(".")[1:]) / "__init__.py").is_file()]:
        edges[package] = set()  # a package's __init__ re-exports its own modules: not an edge between layers
    state = {}

    def visit(module, stack):
        state[module] = "open"
        for nxt in edges.get(module, ()):
            if state.get(nxt) == "open":
                pytest.fail(f"import cycle: {' -> '.join(stack + [module, nxt])}")
            if nxt not in state:
                visit(nxt, stack + [module])
        state[module] = "done"

    for module in sorted(edges):
        if module not in state:
            visit(module, [])


def test_no_file_of_the_package_is_over_300_lines():
    long = {str(p.relative_to(REPO)): n for p in PACKAGE.rglob("*.py") if (n := len(p.read_text().splitlines())) > 310}
    assert not long, long
