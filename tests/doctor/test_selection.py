"""One rule for which GPU training uses: the doctor judges, and the planner plans for, the same card."""

from __future__ import annotations

from doctor_facts import GIB, amd_box, nvidia_box, rx_7900_xtx

from gpudoctor.doctor import diagnose, run_checks
from gpudoctor.doctor.selection import integrated_beside_discrete, training_gpus
from gpudoctor.plan.hardware import hardware_from_facts


def apu_first_box():
    """A Ryzen 7950X desktop: amdgpu lists the CPU's Radeon iGPU (512 MiB, gfx1036) before the RX 7900 XTX."""
    facts = amd_box()
    apu = rx_7900_xtx(index=0, name="AMD Radeon Graphics", total_bytes=512 * 1024**2, used_bytes=100 * 1024**2,
                      gfx_target="gfx1036", pci_bus_id="0000:7c:00.0")
    card = rx_7900_xtx(index=1)
    facts.gpus = [apu, card]
    return facts


def test_an_apu_listed_first_is_set_aside_by_the_doctor_and_the_planner():
    facts = apu_first_box()
    (chosen,) = training_gpus(facts)
    assert chosen.name == "AMD Radeon RX 7900 XTX"
    assert [g.name for g in integrated_beside_discrete(facts)] == ["AMD Radeon Graphics"]

    present = next(f for f in run_checks(facts, only="gpu.present"))
    gpu_row = next(c for c in diagnose(facts).categories if c.name == "GPU")
    hardware = hardware_from_facts(facts)

    assert present.title == "1 GPU found: AMD Radeon RX 7900 XTX (integrated AMD Radeon Graphics set aside)"
    assert gpu_row.headline.startswith("AMD Radeon RX 7900 XTX (24.0 GiB")
    assert hardware.name == chosen.name  # the planner names the card the doctor judged
    assert hardware.device == "rocm" and hardware.gpus == 1
    assert hardware.budget_bytes > 20 * GIB  # the card's 24 GiB, not the iGPU's 0.39 GiB


def test_two_cards_of_a_kind_beside_an_apu_are_both_planned_for():
    facts = apu_first_box()
    facts.gpus.append(rx_7900_xtx(index=2, pci_bus_id="0000:04:00.0"))
    assert [g.index for g in training_gpus(facts)] == [1, 2]
    assert hardware_from_facts(facts).gpus == 2


def test_an_apu_alone_is_what_both_use():
    facts = amd_box()
    facts.gpus = [rx_7900_xtx(name="AMD Radeon 780M", total_bytes=2 * GIB, gfx_target="gfx1103")]
    assert [g.name for g in training_gpus(facts)] == ["AMD Radeon 780M"]
    assert hardware_from_facts(facts).name == "AMD Radeon 780M"


def test_an_nvidia_card_is_never_integrated():
    facts = nvidia_box()
    assert training_gpus(facts) == facts.gpus and integrated_beside_discrete(facts) == []
