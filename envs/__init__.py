"""Environment helpers shared by the training scripts and eval_attacks.py."""
import sys
import warnings

# MuJoCo's compiler warns about gymnasium's own -v4 models (half_cheetah.xml sets `settotalmass`) at every env
# creation, on stderr and into MUJOCO_LOG.TXT in the working folder; the models compile as before: noise here.
KNOWN_MUJOCO_WARNINGS = ("compiler attribute 'settotalmass' is deprecated",)


def quiet_warnings():
    """Each warning at most once per process. Python warnings (e.g. gymnasium's -v4 notice) are shown once per
    message whatever the filters say later (libraries re-register filters, which makes `default` warnings repeat);
    MuJoCo's C-level warnings go to stderr once per message instead of every time plus into MUJOCO_LOG.TXT, and the
    known deprecation above never. Real warnings still show, once."""
    shown, show = set(), warnings.showwarning

    def show_once(message, category, filename, lineno, file=None, line=None):
        if (category, str(message)) not in shown:
            shown.add((category, str(message)))
            show(message, category, filename, lineno, file, line)

    warnings.showwarning = show_once
    try:
        import mujoco
    except ImportError:
        return
    seen = set()

    def on_mujoco_warning(msg):
        if msg not in seen and not any(known in msg for known in KNOWN_MUJOCO_WARNINGS):
            seen.add(msg)
            print(f"MuJoCo warning: {msg}", file=sys.stderr, flush=True)

    mujoco.set_mju_user_warning(on_mujoco_warning)
