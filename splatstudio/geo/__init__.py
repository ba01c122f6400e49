"""Geography: EXIF/XMP reading (`exif`) and WGS84 -> local ENU conversion (`enu`)."""
