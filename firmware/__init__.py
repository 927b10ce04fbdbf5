"""Host side: the crossbar-image compiler and the driver of the RTL core."""
