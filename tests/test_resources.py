"""Machine facts recorded beside every figure: the cpuinfo reader, the bf16 check that
picks training's precision, the thread cap and the package versions."""

from __future__ import annotations

from spacy_bioreama.util.resources import (
    cpu_description,
    cpu_has_bf16,
    limit_torch_threads,
    package_versions,
)

# Two processors; only the first block is read, so the second's flags must not count.
CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 26
model\t\t: 2
model name\t: AMD EPYC Test
flags\t\t: fpu sse avx512f avx512_bf16

processor\t: 1
vendor_id\t: AuthenticAMD
flags\t\t: fpu amx_bf16
"""

NO_BF16 = CPUINFO.replace(" avx512_bf16", "")


def test_cpuinfo_first_block_gives_description_and_bf16(tmp_path):
    path = tmp_path / "cpuinfo"
    path.write_text(CPUINFO)
    assert cpu_description(str(path)) == "AuthenticAMD family 26 model 2 (AMD EPYC Test)"
    assert cpu_has_bf16(str(path)) is True
    path.write_text(NO_BF16)  # amx_bf16 only on the second processor: not read
    assert cpu_has_bf16(str(path)) is False


def test_cpuinfo_without_model_name_or_file(tmp_path):
    path = tmp_path / "cpuinfo"
    path.write_text("vendor_id\t: GenuineIntel\ncpu family\t: 6\n")
    assert cpu_description(str(path)) == "GenuineIntel family 6 model ?"
    missing = str(tmp_path / "absent")
    assert cpu_description(missing) is None
    assert cpu_has_bf16(missing) is False


def test_limit_torch_threads_caps_but_never_raises():
    import torch

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert limit_torch_threads(cores=1) == 1
        assert limit_torch_threads(cores=4) == 1  # a lower count stays
    finally:
        torch.set_num_threads(before)


def test_package_versions_leaves_out_missing():
    found = package_versions(("spacy", "no-such-distribution-xyz"))
    assert list(found) == ["spacy"] and found["spacy"][0].isdigit()
