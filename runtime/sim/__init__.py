"""The simulated robot: a MuJoCo planar arm, its controller process and the exploration recorder."""
