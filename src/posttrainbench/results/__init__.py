"""Run-directory layout, record storage, baseline scores, and the leaderboard scoring."""
