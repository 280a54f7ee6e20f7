"""File input and output that every layer may use: atomic writes (:mod:`.atomic_files`), one fingerprinted
on-disk cache (:mod:`.file_cache`), reading checkpoints without running their code (:mod:`.checkpoints`) and
checking a rerun's settings against those an output folder was written with (:mod:`.folder_settings`)."""
from .atomic_files import (OutputNotWritableError, free_bytes, save_figure, save_json, save_npy, save_npz, save_text,
                           save_torch, tensor_bytes, writing)
from .checkpoints import checkpoint_export, read_checkpoint, restore_rng_state, rng_state_for_checkpoint
from .file_cache import file_digest, fingerprint, read_record, write_optional, write_record
from .folder_settings import settings_conflict

__all__ = ["OutputNotWritableError", "checkpoint_export", "file_digest", "fingerprint", "free_bytes",
           "read_checkpoint", "read_record", "restore_rng_state", "rng_state_for_checkpoint", "save_figure",
           "save_json", "save_npy", "save_npz", "save_text", "save_torch", "settings_conflict", "tensor_bytes",
           "write_optional", "write_record", "writing"]
