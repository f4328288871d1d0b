import os

from hypothesis import HealthCheck, Phase, settings

# The default profile is for quick runs while many rules change at once: few examples
# and no shrinking (a failing sweep line prints its sizes and seed, which reproduce it).
# HYPOTHESIS_PROFILE=thorough explores more and shrinks failures to minimal examples.
settings.register_profile(
    "default", max_examples=8, deadline=None,
    phases=(Phase.explicit, Phase.reuse, Phase.generate),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile("thorough", max_examples=100, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
