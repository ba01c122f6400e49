"""Panoramas: equirectangular ray math (`equirect`), the virtual camera rig and remapping (`rig`)."""
