"""llasa_rt.calibration: prompt sets and measurements of how far quantised graphs drift from fp32."""
