import json

import pytest
import torch

from trainers.checkpoints import flatten, list_checkpoints, load_checkpoint, save_checkpoint, unflatten


def _optimizer_state():
    net = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, betas=(0.9, 0.99))
    net(torch.randn(4, 3)).sum().backward()
    opt.step()
    return opt.state_dict()


def test_flatten_round_trips_optimizer_state_exactly():
    state = {"optimizer": _optimizer_state(), "step": 7, "elapsed": 1.5, "data": {"kind": "map", "position": 28},
             "rng": torch.get_rng_state(), "none": None}
    tensors = {}
    document = json.loads(json.dumps(flatten(state, tensors)))
    restored = unflatten(document, tensors)
    assert restored["step"] == 7 and restored["data"] == state["data"] and restored["none"] is None
    assert restored["optimizer"]["param_groups"][0]["betas"] == (0.9, 0.99)
    assert set(restored["optimizer"]["state"]) == {0, 1}
    for key, value in state["optimizer"]["state"][0].items():
        assert torch.equal(restored["optimizer"]["state"][0][key], value)
    assert torch.equal(restored["rng"], state["rng"])


def test_flatten_rejects_objects_that_need_pickle():
    with pytest.raises(TypeError, match="cannot checkpoint a object"):
        flatten({"x": object()}, {})


def test_save_keeps_the_newest_and_loads_back(tmp_path):
    for step in (2, 4, 6):
        save_checkpoint(tmp_path, step, {"w": torch.full((2,), float(step)), "step": step}, keep=2)
    found = list_checkpoints(tmp_path)
    assert [p.name for p in found] == ["step-000004", "step-000006"]
    step, state = load_checkpoint(found[-1])
    assert step == 6 and torch.equal(state["w"], torch.full((2,), 6.0))


def test_incomplete_checkpoints_are_ignored(tmp_path):
    save_checkpoint(tmp_path, 2, {"w": torch.zeros(1)}, keep=3)
    (tmp_path / ".step-000004.123.tmp").mkdir()  # a write killed before its rename
    half = tmp_path / "step-000006"
    half.mkdir()
    (half / "tensors.safetensors").write_bytes(b"partial")  # no state.json: never completed
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-000002"]


def test_a_damaged_checkpoint_is_a_clear_error(tmp_path):
    path = save_checkpoint(tmp_path, 2, {"w": torch.zeros(3)}, keep=1)
    (path / "tensors.safetensors").write_bytes(b"\x00" * 10)
    with pytest.raises(ValueError, match="checkpoint .*step-000002 cannot be used: .*do not match the SHA-256"):
        load_checkpoint(path)


def test_flipped_bytes_and_missing_tensors_are_found(tmp_path):
    path = save_checkpoint(tmp_path, 2, {"w": torch.arange(64.0), "v": torch.ones(4)}, keep=1)
    data = bytearray((path / "tensors.safetensors").read_bytes())
    data[-5] ^= 0x40  # one bit inside a tensor: still a valid safetensors file
    (path / "tensors.safetensors").write_bytes(bytes(data))
    with pytest.raises(ValueError, match="tensors.safetensors: its contents do not match the SHA-256"):
        load_checkpoint(path)
    path = save_checkpoint(tmp_path, 4, {"w": torch.zeros(2)}, keep=1)
    document = json.loads((path / "state.json").read_text())
    document["state"]["w"] = {"__tensor__": "nowhere"}
    (path / "state.json").write_text(json.dumps(document))
    with pytest.raises(ValueError, match="cannot be used: tensor 'nowhere' is missing"):
        load_checkpoint(path)


def test_a_failed_write_leaves_no_temp_folder_and_stale_ones_are_cleaned(tmp_path, monkeypatch):
    import errno

    import trainers.checkpoints as checkpoints

    save_checkpoint(tmp_path, 2, {"w": torch.zeros(3)}, keep=3)
    (tmp_path / ".step-000003.999.tmp").mkdir()  # left by a killed run

    def full_disk(path, data):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(checkpoints, "_write", full_disk)
    with pytest.raises(OSError, match="No space left"):
        save_checkpoint(tmp_path, 4, {"w": torch.ones(3)}, keep=3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-000002"]
    assert load_checkpoint(tmp_path / "step-000002")[0] == 2
