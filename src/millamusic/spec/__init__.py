"""The files a producer writes, loaded and checked: song, artist and album specs, with every problem located."""
