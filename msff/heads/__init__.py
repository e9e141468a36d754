"""The trained heads of the method, one module each, on the per-clip caches.

==============  ==============================================================  =========
module          trains                                                           needs
==============  ==============================================================  =========
``frame_cnn``   a frame CNN (a backbone of :data:`msff.registry.FRAME_BACKBONES`)  faces
                on face frames; its fc7 features feed the BLSTM
``blstm``       the 2-layer BLSTM over windows of a clip's feature sequence      features
``c3d``         C3D on windows of consecutive aligned faces                      faces
``audio_cnn``   VGG-19 on spectrogram segments; its fc7 features feed the BLSTM  spectrograms
``svm``         the openSMILE (IS09 or ComParE) + SVM baseline                   opensmile
==============  ==============================================================  =========

Each trains through :mod:`msff.heads.common` (one skeleton around
:func:`msff.train.fit`), writes a scores file covering every clip of every split (a clip
it cannot see gets the uniform row and a note saying why), and has an ``infer``
function scoring one clip's caches with a trained model: the workflow's rules and
``msff predict`` call the same code. This package imports none of them, so a rule's
code inputs are its own head's files only.
"""
