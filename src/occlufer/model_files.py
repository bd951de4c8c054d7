"""Which model a ``--model`` value, ``train.init_from`` or ``train.teacher`` names: a ``models/``
folder, ``model.pt``, ``.onnx``, MLflow URI or folder, ``zoo:<name>``; none: ``models/model.pt``
if trained here, else the zoo's default. Not in ``occlufer.models``: the zoo imports that.
"""

from dataclasses import dataclass
from pathlib import Path

from occlufer import tracking, zoo
from occlufer.errors import OccluferError

MODEL_FILE = "model.pt"
NO_MODEL = ("no model file; train one first (`dvc repro`) or pass --model (a models/ folder, "
            "model.pt, model.onnx, zoo:<name> or an MLflow models:/ URI)")


@dataclass(frozen=True)
class ModelChoice:
    """A resolved ``--model``: ``kind`` ``torch``/``onnx``/``mlflow``, ``line`` printed first."""

    ref: str
    path: Path
    kind: str
    line: str

    def torch_file(self) -> Path:
        """The ``model.pt`` behind this choice (commands that need PyTorch weights)."""
        if self.kind == "torch":
            return self.path
        if self.kind == "mlflow":
            found = sorted(self.path.glob(f"artifacts/**/{MODEL_FILE}"))
            if not found:
                raise OccluferError(f"{self.ref}: not an occlufer MLflow model (no artifacts/"
                                    f"{MODEL_FILE}; it was logged in another format); pass a "
                                    "models/ folder, model.pt or zoo:<name> instead")
            return found[0]
        raise OccluferError(f"{self.ref}: an ONNX file has no PyTorch weights; pass a models/ "
                            "folder, model.pt, zoo:<name> or an MLflow URI")


def resolve_model(source: str | Path | None = None) -> ModelChoice:
    """The model ``source`` names; one that cannot be found is one line saying how to get one."""
    if source is None:
        default = Path("models") / MODEL_FILE
        if default.is_file():
            return ModelChoice("models", default, "torch",
                               f"model: {default} (trained here by dvc repro)")
        if zoo.DEFAULT in zoo.names():
            return resolve_model(f"{zoo.SCHEME}{zoo.DEFAULT}")
        raise OccluferError(f"{default}: {NO_MODEL}; the zoo has no default model "
                            f"{zoo.SCHEME}{zoo.DEFAULT} either (in {zoo.zoo_dir()})")
    text = str(source)
    if text.startswith(zoo.SCHEME):
        entry = zoo.verify(text[len(zoo.SCHEME):])
        return ModelChoice(text, entry.pt, "torch", entry.line())
    if text.startswith(("models:/", "runs:/", "mlflow-artifacts:/")):
        return ModelChoice(text, tracking.download_model(text), "mlflow",
                           f"model: {text} (MLflow)")
    path = Path(text)
    if path.suffix.lower() == ".onnx":
        if not path.is_file():
            raise OccluferError(f"{path}: no such ONNX file; write one with "
                                "`occlufer export --format onnx --out model.onnx`")
        return ModelChoice(text, path, "onnx", f"model: {path} (ONNX)")
    if path.is_dir() and (path / "MLmodel").is_file():
        return ModelChoice(text, path, "mlflow", f"model: {path} (MLflow model folder)")
    pt = path / MODEL_FILE if path.is_dir() or path.suffix != ".pt" else path
    if not pt.is_file():
        raise OccluferError(f"{pt}: {NO_MODEL}")
    return ModelChoice(text, pt, "torch", f"model: {pt}")


def resolve_model_file(ref: str) -> Path:
    """The local ``model.pt`` behind ``ref``; one line when none (or an ONNX file)."""
    return resolve_model(str(ref)).torch_file()
