"""The files one run writes: checked against every input before any work, staged, renamed together.

A verb first *claims* each output path (``-o``, ``--report``, ``--heatmap``, ...). A claim resolves the
path (``realpath``: ``out/../in.onnx`` and symlinks are seen through) and refuses, as a usage error before
any work is done, a path that is empty, a directory, a special file (``/dev/null``, a FIFO), an input of
the run (the model, its external-data files, a calibration stack) or another output of the same run.
Writes then go to hidden temporary files in each destination folder and are renamed into place only when
the whole run succeeded (``commit``), so a failure leaves no output - neither a partial file nor the first
of several outputs.
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import onnx

from edgefold.errors import UsageError
from edgefold.graph import io as graph_io


def _real(path: str | os.PathLike) -> Path:
    return Path(os.path.realpath(os.fspath(path)))


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


@dataclass
class RunOutputs:
    """Inputs to protect and outputs to write for one run of a verb (see the module docstring)."""

    make_folders: bool = False  # create a missing destination folder (build, as trtexec does) or refuse
    _protected: dict[Path, str] = field(default_factory=dict)  # real path -> what it is
    _claimed: dict[Path, str] = field(default_factory=dict)  # real path -> the flag that named it
    _staged: list[tuple[Path, Path]] = field(default_factory=list)  # (temporary file, destination)

    # -- inputs -------------------------------------------------------------------------------------
    def protect(self, path: str | os.PathLike | None, what: str) -> None:
        if path is None or os.fspath(path) == "":
            return
        self._protected[_real(path)] = what
        if Path(path).is_dir():
            for child in Path(path).iterdir():
                if child.is_file():
                    self._protected.setdefault(_real(child), f"{what} ({child.name})")

    def protect_model(self, path: str | os.PathLike | None) -> None:
        """The model file and every external-data file it names (read without loading the weights)."""
        if path is None or not Path(path).is_file():
            return
        self.protect(path, f"the input model {path}")
        try:
            model = onnx.load(os.fspath(path), load_external_data=False)
        except Exception:  # noqa: BLE001 - an unreadable model is reported by the loader, not here
            return
        for tensor_name, location in graph_io.external_locations(model):
            if location and "\0" not in location:
                self.protect(Path(path).parent / location, f"the external data of tensor '{tensor_name}' of {path}")

    # -- outputs ------------------------------------------------------------------------------------
    def claim(self, path: str | os.PathLike | None, flag: str) -> Path | None:
        """Check an output path before any work; returns it (None when the flag was not given)."""
        if path is None:
            return None
        text = os.fspath(path)
        if text.strip() == "":
            raise UsageError(f"{flag}: empty path; name the file to write")
        if "\0" in text:
            raise UsageError(f"{flag}: the path contains a NUL byte")
        out = Path(text)
        real = _real(out)
        if out.is_dir() or real.is_dir():
            raise UsageError(f"{flag} {text}: is a directory; name a file inside it")
        if out.exists() and not real.is_file():
            raise UsageError(f"{flag} {text}: not a regular file (a device, FIFO or socket); choose a file path")
        for protected, what in self._protected.items():
            if real == protected or _same_file(real, protected):
                raise UsageError(f"{flag} {text}: that is {what}; refusing to overwrite an input - choose "
                                 f"another path")
        if real in self._claimed:
            raise UsageError(f"{flag} {text}: the same file as {self._claimed[real]}; choose another path")
        folder = real.parent
        blocker = next((a for a in real.parents if a.exists() and not a.is_dir()), None)
        if blocker is not None:  # a file where a folder of the path should be (make_folders cannot help)
            raise UsageError(f"{flag} {text}: {blocker} is a file, not a folder; choose another path")
        if not folder.exists():
            if not self.make_folders:
                raise UsageError(f"{flag} {text}: output folder {out.parent} does not exist; create it first "
                                 f"(mkdir -p {out.parent})")
        elif not folder.is_dir():
            raise UsageError(f"{flag} {text}: {out.parent} is not a folder")
        elif not os.access(folder, os.W_OK | os.X_OK):
            raise UsageError(f"{flag} {text}: output folder {out.parent} is not writable")
        self._claimed[real] = f"{flag} {text}"
        return out

    def claim_model(self, path: str | os.PathLike | None, flag: str) -> Path | None:
        """A model output and the ``NAME.data`` file a model over 2 GB would get beside it."""
        out = self.claim(path, flag)
        if out is not None:
            data = out.parent / (out.name + ".data")
            self.claim(data, f"{flag} (its external data)")
        return out

    # -- staging ------------------------------------------------------------------------------------
    def _temp_in(self, out: Path) -> Path:
        folder = _real(out).parent
        if self.make_folders:
            folder.mkdir(parents=True, exist_ok=True)
        try:
            fd, tmp = tempfile.mkstemp(dir=folder, prefix=".edgefold-", suffix=".part")
        except OSError as err:
            raise UsageError(f"cannot write {out}: {err.strerror or type(err).__name__}") from None
        os.close(fd)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; outputs are ordinary files others may read
        return Path(tmp)

    def _check_claimed(self, out: Path) -> None:
        if _real(out) not in self._claimed:
            raise RuntimeError(f"edgefold wrote {out} without claiming it first")  # a bug, not bad input

    def stage_bytes(self, path: str | os.PathLike, data: bytes) -> None:
        out = Path(path)
        self._check_claimed(out)
        tmp = self._temp_in(out)
        self._staged.append((tmp, _real(out)))
        try:
            tmp.write_bytes(data)
        except OSError as err:
            raise UsageError(f"cannot write {out}: {err.strerror or type(err).__name__}") from None

    def stage_text(self, path: str | os.PathLike, text: str) -> None:
        self.stage_bytes(path, text.encode())

    def stage_model(self, path: str | os.PathLike, model: onnx.ModelProto) -> None:
        """Serialise now (so a model too large fails before anything is renamed); weights of models over
        2 GB go to ``NAME.data`` beside it, staged the same way."""
        out = Path(path)
        self._check_claimed(out)
        if not graph_io.is_large(model):
            self.stage_bytes(out, model.SerializeToString())
            return
        data_name = out.name + ".data"
        self._check_claimed(out.parent / data_name)
        folder = self._temp_in(out)
        folder.unlink()
        folder.mkdir()
        self._staged.append((folder, folder))  # removed after the commit or on failure
        try:
            graph_io.save_external(model, folder / out.name, data_name)
        except OSError as err:
            raise UsageError(f"cannot write {out}: {err.strerror or type(err).__name__}") from None
        self._staged.append((folder / out.name, _real(out)))
        if (folder / data_name).exists():  # absent when every tensor is small enough to stay inline
            self._staged.append((folder / data_name, _real(out.parent / data_name)))

    def commit(self) -> None:
        """Rename every staged file into place (each rename is atomic), then drop the staging folders."""
        for tmp, dest in self._staged:
            if tmp != dest:
                os.replace(tmp, dest)
        self.discard()

    def discard(self) -> None:
        """Remove whatever is still staged (after a failure, or the empty staging folders after a commit)."""
        for tmp, _ in reversed(self._staged):
            try:
                if tmp.is_dir():
                    for child in tmp.iterdir():
                        child.unlink()
                    tmp.rmdir()
                else:
                    tmp.unlink(missing_ok=True)
            except OSError:
                pass
        self._staged.clear()

    def __enter__(self) -> RunOutputs:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:  # noqa: ANN001
        if exc_type is None:
            self.commit()
        else:
            self.discard()
