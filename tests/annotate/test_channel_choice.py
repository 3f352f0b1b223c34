"""The headless annotation session on a multichannel stack: one channel segmented alone, or
channels 0-2 as RGB; switching channel keeps the prompts and decodes them on the new one."""

from __future__ import annotations

import numpy as np

from stacks import blob_stack


def test_switching_channel_keeps_the_prompts_and_decodes_the_new_channel(tiny_sam):
    from napari_sam.annotate import AnnotationSession, ModelChoice
    from napari_sam.predictor import Predictor

    bright = blob_stack()
    data = np.stack([bright, bright.max() - bright], axis=1)  # (Z, 2, Y, X): inverted twin
    s = AnnotationSession()
    s.set_image(data, channel_axis=1, channel=0, name="two stains")
    choice = ModelChoice("tiny", "tiny")
    s.models.put(choice, "auto", Predictor(tiny_sam, device="cpu"))
    s.set_model(choice)
    s.go_to_slice(3)
    assert s.source.stack.shape == (6, 64, 64) and np.array_equal(s.source.stack[3], bright[3])
    s.add_point(3, 20, 20)
    s.update_preview()
    first = s.previews[0].mask.copy()

    s.set_image(data, channel_axis=1, channel=1, name="two stains")
    assert np.array_equal(s.source.stack[3], data[3, 1])
    assert len(s.prompt_arrays()[0]) == 1  # the click stays
    assert "SAM now segments channel 1 alone." in s.status
    assert s.previews and not np.array_equal(s.previews[0].mask, first), s.status

    s.set_image(data, channel_axis=1, channel=None, name="two stains")
    assert s.source.stack.shape == (6, 64, 64, 3) and s.previews
    assert "SAM now segments channels 0-1 as red, green (blue empty)." in s.status


def test_the_words_for_all_channels_count_them_from_0_as_the_entries_do():
    """'all: channels 1-3 as red, green, blue' beside 'channel 0' and 'channel 1' of a
    2-channel image (session 33's dock walk-through): there is no channel 3, and the blue is
    empty."""
    from napari_sam.annotate.image_source import segmented_words

    assert segmented_words(1, None, 2) == "channels 0-1 as red, green (blue empty)"
    assert segmented_words(1, None, 3) == "channels 0-2 as red, green, blue"
    assert segmented_words(0, None, 4) == "channels 0-2 as red, green, blue (channel 3 left out)"
    assert segmented_words(0, None, 6) == ("channels 0-2 as red, green, blue (channels 3-5 "
                                           "left out)")
    assert segmented_words(0, 4, 6) == "channel 4 alone"
    assert segmented_words(None, None) == "the image"


def test_a_session_made_on_all_channels_names_the_entry_the_dock_shows():
    """A 2-channel image: "pick channels 0-2 as red, green, blue" named no entry of the
    dock's 'Channel' (the reviewer's catch)."""
    from types import SimpleNamespace

    from napari_sam.session import image_differences

    sess = SimpleNamespace(image={"channel_axis": 1, "channel": None, "name": "cells",
                                  "layer_shape": [6, 2, 64, 64]})
    (said,) = image_differences(sess, content_hash=None, name="cells", what="'cells'",
                                channels=(1, 0))
    assert said == ("the session was made segmenting channels 0-1 as red, green (blue empty) "
                    "(channel axis 1), 'cells' is segmented as channel 0 alone: pick channels "
                    "0-1 as red, green (blue empty) in the dock's 'Channel' to go on as it was "
                    "made")
