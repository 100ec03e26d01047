"""The read path: regenerating archived images for the front ends (the mount, the HTTP origin, the
review page) and restores.

`models` loads the models renders need, in the background as a front end starts, shared by every
front end.
"""
