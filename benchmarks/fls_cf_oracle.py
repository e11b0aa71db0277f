"""Chapter 5, a control (no module): how often do the judges change the digit for the *true* colour counterfactual?
Each test image x of binary Coloured MNIST is recoloured with the other group's colour (the grey strokes, read off
the green channel, which is 0.55 in both group colours, times GROUP_COLOURS[1 - s]; no jitter), giving x'.

    rec_:   judges trained on reconstructions (as fls_margins' rec_ keys), decode(E(x')) against decode(E(x)):
            the best any latent counterfactual of this generator can be expected to do
    plain_: judges trained on x, x' against x: the judges' own colour sensitivity

    OMP_NUM_THREADS=1 FAIRLAB_CHECKPOINTS=<scratch> python benchmarks/fls_cf_oracle.py 0,1,2,3,4
"""
import json
import os
import sys

import torch

os.environ.setdefault("FAIRLAB_PROFILE", "quick")
from fairlab.data.binary_cmnist import GROUP_COLOURS  # noqa: E402
from fairlab.experiments import fair_latent_space as fls_exp  # noqa: E402
from fairlab.pretrained import pretrained_generator  # noqa: E402


def changed(judge, a, b) -> float:
    return round(float((judge(a).argmax(1) != judge(b).argmax(1)).float().mean()), 4)


def main():
    for seed in [int(a) for a in sys.argv[1].split(",")]:
        settings = fls_exp.chapter_settings("cmnist-binary")
        train = fls_exp.load_data("cmnist-binary", "train", seed=seed, settings=settings)
        test = fls_exp.load_data("cmnist-binary", "test", seed=seed, settings=settings)
        gen = pretrained_generator(train, settings["generator"], progress=False).model
        judge_train = fls_exp.judge_data("cmnist-binary", seed=seed, settings=settings)
        x, s = test.x[:1000], test.s[:1000]
        grey = (x[:, 1] / 0.55).clamp(0, 1)
        x_cf = grey[:, None] * GROUP_COLOURS[1 - s][:, :, None, None]
        row = {"seed": seed}
        for tag, generator in (("plain_", None), ("rec_", gen)):
            judges = fls_exp.fit_judges(judge_train, settings["judge"], seed=seed, generator=generator)
            with torch.no_grad():
                if generator is None:
                    a, b = x, x_cf
                else:
                    a, b = gen.decode(gen.encode(x)[0]), gen.decode(gen.encode(x_cf)[0])
                for who in "sy":
                    row[f"{tag}recolour_{who}_change"] = changed(judges[who], a, b)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
