from model_core.data.performer.identity import identity_fingerprint, sample_identity, split_of


def test_thousands_of_distinct_identities():
    looks = {identity_fingerprint(sample_identity(i)) for i in range(2000)}
    assert len(looks) == 2000


def test_identity_is_a_pure_function_of_seed_and_index():
    assert sample_identity(17, seed=3) == sample_identity(17, seed=3)
    assert sample_identity(17, seed=3) != sample_identity(17, seed=4)


def test_held_out_identities_are_every_tenth():
    assert [split_of(i) for i in range(20)].count("heldout") == 2
    assert sample_identity(9).split == "heldout" and sample_identity(8).split == "train"


def test_a_face_twin_keeps_the_colours_and_clothes_and_changes_every_proportion():
    from dataclasses import fields

    from model_core.data.performer.identity import FACE_SHAPE, twin_identity

    for i in range(40):
        a = sample_identity(i)
        t = twin_identity(a, "face")
        assert t == twin_identity(a, "face")  # a pure function
        for f in fields(a):
            if f.name in FACE_SHAPE:
                lo, hi = FACE_SHAPE[f.name]
                assert lo <= getattr(t, f.name) <= hi
                assert abs(getattr(t, f.name) - getattr(a, f.name)) >= 0.4 * (hi - lo) - 1e-3
            elif f.name != "id":
                assert getattr(t, f.name) == getattr(a, f.name), f.name
        assert t.id != a.id and identity_fingerprint(t) != identity_fingerprint(a)


def test_a_palette_twin_keeps_only_the_colours():
    from model_core.data.performer.identity import twin_identity

    for i in range(40):
        a = sample_identity(i)
        t = twin_identity(a, "palette")
        assert (t.skin, t.hair_color, t.clothing_color, t.lip_color) == (
            a.skin,
            a.hair_color,
            a.clothing_color,
            a.lip_color,
        )
        assert t.hair_style != a.hair_style and t.clothing_style != a.clothing_style
        assert t.accessory != a.accessory and t.voice == a.voice


def test_an_unknown_twin_kind_is_refused():
    import pytest

    from model_core.data.performer.identity import twin_identity

    with pytest.raises(ValueError, match="twin kind"):
        twin_identity(sample_identity(0), "hair")
