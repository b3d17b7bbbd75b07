"""World Models (Ha & Schmidhuber 2018) on CarRacing-v3: the library behind the DVC stages."""
