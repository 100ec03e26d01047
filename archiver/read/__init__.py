"""The read path: archived images, regenerated and verified, for the front ends (the mount, the HTTP
origin, the review page) and restores.

The way in is `policy.ReadPolicy`: what a front end calls to read an asset. It tries memory, the
disk cache, one verified render per asset, then the vault original, else files a restore job, and
says which by its outcomes (`Remote`, `VaultFailed`, `StillRendering`, `Busy`, `NoRender`).
Underneath it:
- `reader.AssetReader`: the one door to archived bytes: a render checked against its record (exact
  SHA-256, or the render sketch within tolerance), or the vault original checked against the
  asset's SHA-256. Restores and `model check` use it directly; front ends only through the policy.
- `models`: loading the models renders need, preloaded in the background as a front end starts.
"""
