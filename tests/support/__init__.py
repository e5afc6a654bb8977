"""What the test suite shares: the project's paths (:mod:`.paths`) and the one way to run
the real ``bake`` command (:mod:`.cli`). Servers are started by the fixtures in
``tests/fixtures/``."""
