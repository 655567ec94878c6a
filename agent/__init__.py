"""The agent: joins dsml, tools and model into a long-horizon loop, its API and its command line."""
