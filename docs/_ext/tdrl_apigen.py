"""Generate tdrl's API reference pages from the ``__all__`` lists of its public modules.

Sphinx runs :func:`generate` at ``builder-inited`` (see :func:`setup`), before it looks for
source files, so the pages under ``docs/api/`` (git-ignored) are rebuilt from the code on
every build and cannot drift from it. ``tests/test_docs.py`` calls the same functions
without Sphinx.

Which modules: every module or package of tdrl whose dotted name has no part starting with
``_`` and that defines ``__all__``. Each name in such an ``__all__`` is a public import path.

Which pages: every such package gets a page, and so does every such plain module that has
names of its own (``tdrl.envs.libs.gym``, ``tdrl.objectives.value.functional``, ...). A plain
module whose package re-exports all of its names (``tdrl.envs.transforms.env``) is where the
code lives, not a place to look things up: it gets no page, and its import paths are listed
under each object as "also importable as".

Where each object is documented (once): many objects are importable from several modules.
Its *home* is the module that defines it when that module lists it (otherwise, for objects
defined in a private module or in another library, the deepest module that lists it). The
object is documented on the deepest page that lists it among the home and the home's
parents: ``TransformedEnv`` (home ``tdrl.envs.transforms.env``) at
``tdrl.envs.transforms.TransformedEnv``, ``GymEnv`` at ``tdrl.envs.libs.gym.GymEnv``,
``Bounded`` at ``tdrl.specs.Bounded`` (``tdrl.data`` re-exports it but is not a parent of
its home). Every other page that lists it links there.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import itertools
import pkgutil
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

PACKAGE = "tdrl"
OUT_DIR = "api"  # under the Sphinx source directory; git-ignored


def is_public(dotted: str) -> bool:
    """Whether no part of a dotted module name starts with an underscore."""
    return not any(part.startswith("_") for part in dotted.split("."))


def discover(package: str = PACKAGE) -> dict[str, ModuleType]:
    """Import every public module of ``package`` that defines ``__all__``, sorted by name.

    Private modules and packages (a leading underscore) are neither returned nor entered.
    """

    def walk(module: ModuleType):
        yield module
        for info in pkgutil.iter_modules(getattr(module, "__path__", [])):
            if info.name.startswith("_"):
                continue
            yield from walk(importlib.import_module(f"{module.__name__}.{info.name}"))

    found = {m.__name__: m for m in walk(importlib.import_module(package)) if hasattr(m, "__all__")}
    return dict(sorted(found.items()))


@dataclass
class Entry:
    """One object of the API, documented once, at ``page.name``."""

    page: str
    name: str
    kind: str  # "class", "exception", "function", "data" (autodoc directives) or "module"
    obj: object
    paths: list[str] = field(default_factory=list)  # every public import path, this one first

    @property
    def path(self) -> str:
        """The canonical import path (for a module: the module's own name)."""
        return self.page if self.kind == "module" else f"{self.page}.{self.name}"

    @property
    def other_paths(self) -> list[str]:
        """The import paths other than the canonical one."""
        return [p for p in self.paths if p != self.path]

    @property
    def foreign(self) -> str | None:
        """Where another library defines the object (``tensordict.nn.ExplorationType``), or None."""
        module = getattr(self.obj, "__module__", None)
        if self.kind in ("data", "module") or not module or module.split(".")[0] == PACKAGE:
            return None
        return f"{module}.{getattr(self.obj, '__qualname__', self.name)}"


@dataclass
class ApiModel:
    """The public API: its modules, the pages, and every object's canonical path."""

    modules: dict[str, ModuleType]
    pages: list[str]
    entries: list[Entry]
    canonical: dict[str, str]  # every public import path "module.name" -> the canonical path

    def documented_on(self, page: str) -> list[Entry]:
        """The entries documented on ``page``, in the order of its ``__all__``."""
        order = {name: i for i, name in enumerate(self.modules[page].__all__)}
        return sorted((e for e in self.entries if e.page == page and e.kind != "module"), key=lambda e: order[e.name])

    def entry_for(self, path: str) -> Entry:
        """The entry of the object importable as ``path``."""
        target = self.canonical[path]
        return next(e for e in self.entries if e.path == target)


def _kind(obj: object) -> str:
    if inspect.ismodule(obj):
        return "module"
    if inspect.isclass(obj):
        return "exception" if issubclass(obj, BaseException) else "class"
    if inspect.isroutine(obj):
        return "function"
    return "data"


def _identity(name: str, obj: object) -> tuple:
    # Classes, functions and modules are the same object under every name; a constant
    # (a string, a tuple) is only "the same" under the same name, since equal small values
    # may share one object.
    if _kind(obj) == "data":
        return ("data", name, id(obj))
    return ("object", id(obj))


def _depth(dotted: str) -> int:
    return dotted.count(".")


def _is_parent_or_self(parent: str, dotted: str) -> bool:
    return dotted == parent or dotted.startswith(parent + ".")


def _reexported(name: str, modules: dict[str, ModuleType]) -> bool:
    """A plain module (not a package) whose parent package lists each of its names, as the same objects."""
    module = modules[name]
    parent = modules.get(name.rpartition(".")[0])
    if hasattr(module, "__path__") or parent is None or not module.__all__:
        return False
    return all(n in parent.__all__ and getattr(parent, n) is getattr(module, n) for n in module.__all__)


def build_model(modules: dict[str, ModuleType] | None = None) -> ApiModel:
    """Decide the pages and where each public object is documented.

    Raises:
        ValueError: when an ``__all__`` lists a name its module lacks, or a module that has
            no page of its own.
    """
    modules = discover() if modules is None else modules
    pages = [name for name in modules if not _reexported(name, modules)]

    listings: dict[tuple, list[tuple[str, str]]] = {}
    objects: dict[tuple, object] = {}
    for module_name, module in modules.items():
        for name in module.__all__:
            if not hasattr(module, name):
                raise ValueError(f"{module_name}.__all__ lists {name!r}, which {module_name} does not define")
            obj = getattr(module, name)
            key = _identity(name, obj)
            listings.setdefault(key, []).append((module_name, name))
            objects[key] = obj

    entries, canonical = [], {}
    for key, where in listings.items():
        obj = objects[key]
        kind = _kind(obj)
        paths = [f"{m}.{n}" for m, n in where]
        if kind == "module":
            if obj.__name__ not in pages:
                raise ValueError(f"{paths[0]} is a module without a page of its own: give it an __all__")
            entry = Entry(page=obj.__name__, name=obj.__name__.rpartition(".")[2], kind=kind, obj=obj)
        else:
            listed_in = [m for m, _ in where]
            defined_in = getattr(obj, "__module__", None) if kind != "data" else None
            home = defined_in if defined_in in listed_in else max(listed_in, key=_depth)
            candidates = [m for m in listed_in if m in pages and _is_parent_or_self(m, home)]
            page = max(candidates or [m for m in listed_in if m in pages], key=_depth)
            names_here = [n for m, n in where if m == page]
            own_name = getattr(obj, "__name__", None)
            name = own_name if own_name in names_here else names_here[0]
            entry = Entry(page=page, name=name, kind=kind, obj=obj)
        entry.paths = [entry.path] + [p for p in paths if p != entry.path]
        entries.append(entry)
        for p in paths:
            canonical[p] = entry.path
    return ApiModel(modules=modules, pages=pages, entries=entries, canonical=canonical)


# --- rendering ---------------------------------------------------------------------------


def _title(text: str, char: str) -> list[str]:
    return [text, char * len(text), ""]


def _role(entry: Entry) -> str:
    role = {"class": "class", "exception": "exc", "function": "func", "data": "data", "module": "mod"}[entry.kind]
    return f":{role}:`{entry.path}`"


def attribute_doc(module: ModuleType, name: str) -> str | None:
    """The docstring written under ``name = ...`` at the top level of ``module``'s source, or None."""
    try:
        tree = ast.parse(inspect.getsource(module))
    except (OSError, TypeError):
        return None
    for statement, following in itertools.pairwise(tree.body):
        targets = statement.targets if isinstance(statement, ast.Assign) else [getattr(statement, "target", None)]
        if not any(isinstance(t, ast.Name) and t.id == name for t in targets):
            continue
        value = following.value if isinstance(following, ast.Expr) else None
        if isinstance(value, ast.Constant) and isinstance(value.value, str):
            return inspect.cleandoc(value.value)
    return None


def _data_doc(model: ApiModel, entry: Entry) -> str | None:
    # autodoc would read a constant's docstring from the page's module only, and fall back
    # on the docstring of the value's type (``str``'s, ``tuple``'s); the docstring lives
    # under the assignment in the module that defines the constant.
    for path in entry.paths:
        module_name, _, name = path.rpartition(".")
        doc = attribute_doc(model.modules[module_name], name)
        if doc:
            return doc
    return None


def _render_entry(model: ApiModel, entry: Entry) -> list[str]:
    if entry.kind == "data":
        lines = [f".. py:data:: {entry.name}", f"   :value: {entry.obj!r}", ""]
        doc = _data_doc(model, entry)
        if doc:
            lines += [f"   {line}" if line else "" for line in doc.splitlines()] + [""]
    else:
        lines = [f".. auto{entry.kind}:: {entry.name}"]
        if entry.kind in ("class", "exception"):
            lines += ["   :members:", "   :show-inheritance:"]
        lines.append("")
    notes = []
    if entry.foreign:
        notes.append(f"Re-exported from ``{entry.foreign}``.")
    if entry.other_paths:
        notes.append("Also importable as " + ", ".join(f"``{p}``" for p in entry.other_paths) + ".")
    if notes:
        lines += ["   .. rubric:: Import paths", "", *(f"   {n}" for n in notes), ""]
    return lines


def render_page(model: ApiModel, page: str) -> str:
    """The reStructuredText of one module's page."""
    module = model.modules[page]
    lines = [*_title(page, "="), f".. automodule:: {page}", "", f".. currentmodule:: {page}", ""]

    children = [p for p in model.pages if p.rpartition(".")[0] == page]
    code_modules = [m for m in model.modules if m not in model.pages and m.rpartition(".")[0] == page]
    if children:
        lines += [".. rubric:: Subpackages and modules", ""]
        lines += [f"- :mod:`{c}`" for c in children] + [""]
    if code_modules:
        names = ", ".join(f"``{m}``" for m in code_modules)
        lines += [f"The code lives in {names}; everything they export is documented on this page.", ""]

    documented = model.documented_on(page)
    if documented:
        lines += _title("Documented here", "-")
        # autosummary would take a constant's summary from its type (``str``, ``tuple``):
        # constants are listed in full below the table instead.
        summarized = [e.name for e in documented if e.kind != "data"]
        if summarized:
            lines += [".. autosummary::", "   :nosignatures:", ""]
            lines += [f"   {name}" for name in summarized] + [""]
        for entry in documented:
            lines += _render_entry(model, entry)

    elsewhere = [n for n in module.__all__ if model.canonical[f"{page}.{n}"] != f"{page}.{n}"]
    if elsewhere:
        lines += _title("Also importable from here", "-")
        lines += ["These names are documented where they are defined.", ""]
        lines += [".. list-table::", "   :header-rows: 1", "", "   * - Name", "     - Documented at"]
        for name in elsewhere:
            lines += [f"   * - ``{name}``", f"     - {_role(model.entry_for(f'{page}.{name}'))}"]
        lines.append("")

    if not documented and not elsewhere and not children:
        lines += ["This module exports no names.", ""]
    return "\n".join(lines)


def render_index(model: ApiModel) -> str:
    """The API index: a short text and a toctree of every page."""
    lines = [
        *_title("API reference", "="),
        "One page per public package or module, generated from its ``__all__``. Each object is",
        "documented once, on the page of the package that owns it; the pages that re-export it",
        "link there, and its entry lists every path it can be imported from.",
        "",
        ".. toctree::",
        "   :maxdepth: 1",
        "",
    ]
    lines += [f"   {page}" for page in model.pages]
    return "\n".join(lines) + "\n"


def render(model: ApiModel) -> dict[str, str]:
    """Every file of the API reference: ``{file name: text}``."""
    files = {"index.rst": render_index(model)}
    for page in model.pages:
        files[f"{page}.rst"] = render_page(model, page)
    return files


def write(out_dir: Path, files: dict[str, str]) -> None:
    """Write ``files`` into ``out_dir``, touching only the files that changed (so Sphinx
    rereads only those) and removing the ``.rst`` files of pages that no longer exist."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in {p.name for p in out_dir.glob("*.rst")} - set(files):
        (out_dir / stale).unlink()
    for name, text in files.items():
        path = out_dir / name
        if not path.exists() or path.read_text() != text:
            path.write_text(text)


def generate(out_dir: Path) -> ApiModel:
    """Discover the API, decide its pages and write them into ``out_dir``."""
    model = build_model()
    write(out_dir, render(model))
    return model


def public_bases(cls: type, documented: set[int]) -> list[type]:
    """The bases to show for ``cls``: a tdrl base that is not documented (``_MockBase``, a
    class of a private module) is replaced by its own bases, recursively, so the page names
    only classes a reader can look up."""
    shown: list[type] = []
    for base in cls.__bases__:
        internal = base.__module__.split(".")[0] == PACKAGE and id(base) not in documented
        for b in public_bases(base, documented) if internal else [base]:
            if b not in shown:
                shown.append(b)
    # a private mixin's own base is ``object``, which says nothing beside another base
    return [b for b in shown if b is not object] or [object]


def resolve(model: ApiModel, target: str, module: str | None = None) -> str | None:
    """The canonical path a cross-reference to ``target`` means, or None.

    ``target`` may be any public import path (``tdrl.envs.TransformedEnv``), a path
    relative to ``module`` or one of its parents (``PrioritizedSampler`` written in
    ``tdrl.data.replay_buffers``), or a name unique across the API; a trailing member
    (``LossModule.make_value_estimator``) is kept after the resolved object's path.
    """
    parts = target.lstrip(".~").split(".")
    scopes = []
    while module:
        scopes.append(module + ".")
        module = module.rpartition(".")[0]
    scopes.append("")
    for i in range(len(parts), 0, -1):
        head, rest = ".".join(parts[:i]), parts[i:]
        found = next((model.canonical[s + head] for s in scopes if s + head in model.canonical), None)
        if found is None:
            same_name = {e.path for e in model.entries if e.path.endswith("." + head) and e.kind != "module"}
            found = same_name.pop() if len(same_name) == 1 else None
        if found is not None:
            return ".".join([found, *rest])
    return None


def is_internal(target: str) -> bool:
    """Whether ``target`` names something tdrl defines or imports outside its public API:
    a private module's class (``tdrl.data.replay_buffers._layout.TensorLayout``), or a type
    (a class or a type alias) a type hint spells by its bare name (``ShapeLike``). Such names
    have no page to link to."""
    parts = target.lstrip(".~").split(".")
    if parts[0] == PACKAGE:
        for i in range(len(parts) - 1, 0, -1):
            module = sys.modules.get(".".join(parts[:i]))
            if module is not None:
                obj = module
                for attr in parts[i:]:
                    obj = getattr(obj, attr, None)
                return obj is not None
        return False
    if len(parts) > 1:
        return False
    return any(
        name.split(".")[0] == PACKAGE and _is_type(getattr(module, parts[0], None))
        for name, module in list(sys.modules.items())
        if module is not None
    )


def _is_type(obj: object) -> bool:
    # a class, or a type alias such as ``str | tuple`` or ``Callable[..., EnvBase]``
    return (
        inspect.isclass(obj)
        or isinstance(obj, (types.UnionType, types.GenericAlias))
        or type(obj).__module__ == "typing"
    )


def _function_of(member: object) -> object:
    member = member.fget if isinstance(member, property) else member
    return getattr(member, "__func__", member)  # classmethod, staticmethod, bound method


def foreign_docstring(member: object) -> bool:
    """Whether ``member``, a method or property tdrl defines without a docstring, would be
    shown with the docstring of the method it overrides in another library (``forward``
    with ``nn.Module.forward``'s "Define the computation performed at every call")."""
    function = _function_of(member)
    module = getattr(function, "__module__", None) or ""
    if module.split(".")[0] != PACKAGE or getattr(function, "__doc__", None):
        return False
    *owner_path, name = getattr(function, "__qualname__", "").split(".")
    owner = sys.modules.get(module)
    for part in owner_path:
        owner = getattr(owner, part, None)
    if not inspect.isclass(owner):
        return False
    for klass in owner.__mro__[1:]:
        if name in vars(klass) and getattr(_function_of(vars(klass)[name]), "__doc__", None):
            return klass.__module__.split(".")[0] != PACKAGE
    return False


_model: ApiModel | None = None  # the model of the current build, for the autodoc hooks


def _on_builder_inited(app) -> None:
    global _model
    _model = generate(Path(app.srcdir) / OUT_DIR)


def _on_process_bases(app, name, obj, options, bases) -> None:
    if _model is not None and obj.__module__.split(".")[0] == PACKAGE:
        bases[:] = public_bases(obj, {id(e.obj) for e in _model.entries})


def _on_skip_member(app, what, name, obj, skip, options):
    # Leave out what would document another library's method under a tdrl class's name.
    return True if what in ("class", "exception") and foreign_docstring(obj) else None


def _on_missing_reference(app, env, node, contnode):
    # Called for a Python cross-reference Sphinx could not resolve by itself.
    if node.get("refdomain") != "py" or _model is None:
        return None
    target = node["reftarget"]
    domain = env.get_domain("py")
    path = resolve(_model, target, node.get("py:module"))
    if path is not None and path != target:
        found = domain.resolve_xref(env, node["refdoc"], app.builder, node["reftype"], path, node, contnode)
        if found is not None:
            return found
    if not node.get("refspecific"):
        # As if written ``.name``: a member documented once on the page (``make_env`` in
        # a summary line, where the class is not the context); several matches still warn.
        specific = node.deepcopy()
        specific["refspecific"] = True
        found = domain.resolve_xref(env, node["refdoc"], app.builder, node["reftype"], target, specific, contnode)
        if found is not None:
            return found
    if node["reftype"] in ("class", "obj", "data") and is_internal(target):
        return contnode  # shown as text, as intended: internals have no page
    return None


def setup(app) -> dict:
    """Sphinx entry point: regenerate the API pages before Sphinx reads the sources."""
    app.connect("builder-inited", _on_builder_inited)
    app.connect("autodoc-process-bases", _on_process_bases)
    app.connect("autodoc-skip-member", _on_skip_member)
    app.connect("missing-reference", _on_missing_reference)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
