#version 330 core
// Gaussian splat vertex shader: one instanced screen-space quad per gaussian.
//
// The 3D covariance Sigma (world frame) is projected to a 2D covariance in pixels with the
// EWA Jacobian (Zwicker et al. 2002), as gsplat, the INRIA rasterizer and the WebGL viewers
// (antimatter15/splat, SuperSplat) do: cov2d = J W Sigma W^T J^T + 0.3 I.
// Camera frame: OpenCV (x right, y down, z forward), u_view is world-to-camera.
// Per-gaussian data lives in an RGBA32F texture, 4 texels per gaussian, 1024 gaussians per
// row: t0 = (mean xyz, opacity), t1 = (cov xx, xy, xz, yy), t2 = (cov yz, zz, -, -),
// t3 = (DC colour 0.5 + SH_C0 * sh0, selected flag: 1 tints it orange). The instanced attribute a_index gives the gaussian
// drawn by this instance, so a back-to-front sort only re-uploads the index buffer.
//
// View-dependent colour: spherical harmonics of bands 1..u_sh_degree are evaluated along the
// world-space direction from the camera centre to the mean and added to the DC colour, then
// clamped at 0, exactly as gsplat (spherical_harmonics + 0.5, clamp_min 0) and the INRIA
// rasterizer (computeColorFromSH) do; basis, signs and constants of
// splatstudio/render/sh.py (Sloan, JCGT 2013). The higher-order coefficients shN [K, 3] live
// in u_sh, an RGBA16F texture, u_sh_texels texels per gaussian (3, 6 or 12 for K = 3, 8, 15),
// u_sh_per_row gaussians per row, flattened coefficient-major: the 3 values of coefficient k
// (k = 0 .. K-1, basis index k + 1) at scalar offset 3 k, so every 4 coefficients fill 3 texels.

layout(location = 0) in vec2 a_corner;   // quad corner in [-1, 1]^2
layout(location = 1) in uint a_index;    // per instance: gaussian index (sorted order)

uniform sampler2D u_data;
uniform mat4 u_view;       // world-to-camera (OpenCV)
uniform vec2 u_focal;      // fx, fy in pixels
uniform vec2 u_viewport;   // width, height in pixels
uniform float u_near;      // near plane, world units
uniform bool u_antialiased; // scale opacity by the 2D filter's compensation (gsplat)
uniform sampler2D u_sh;    // higher-order SH coefficients (half floats), see above
uniform int u_sh_degree;   // bands evaluated: min(file degree, user cap), 0 = DC only
uniform int u_sh_texels;   // texels per gaussian in u_sh
uniform int u_sh_per_row;  // gaussians per row of u_sh
uniform vec3 u_cam_pos;    // camera centre, world frame, world units

out vec4 v_color;          // rgb, opacity
out vec2 v_pos;            // position in the quad, in standard deviations

const float K_SIGMA = 3.0;

const float SH_C1 = 0.4886025119029199;
const float SH_C2_0 = 1.0925484305920792;
const float SH_C2_1 = -1.0925484305920792;
const float SH_C2_2 = 0.31539156525252005;
const float SH_C2_3 = -1.0925484305920792;
const float SH_C2_4 = 0.5462742152960396;
const float SH_C3_0 = -0.5900435899266435;
const float SH_C3_1 = 2.890611442640554;
const float SH_C3_2 = -0.4570457994644658;
const float SH_C3_3 = 0.3731763325901154;
const float SH_C3_4 = -0.4570457994644658;
const float SH_C3_5 = 1.445305721320277;
const float SH_C3_6 = -0.5900435899266435;

// Bands 1..degree of the SH colour of gaussian i seen along unit direction d (world frame).
vec3 sh_bands(int i, vec3 d, int degree) {
    ivec2 b = ivec2((i % u_sh_per_row) * u_sh_texels, i / u_sh_per_row);
    vec4 s0 = texelFetch(u_sh, b, 0);
    vec4 s1 = texelFetch(u_sh, b + ivec2(1, 0), 0);
    vec4 s2 = texelFetch(u_sh, b + ivec2(2, 0), 0);
    float x = d.x, y = d.y, z = d.z;
    // band 1: coefficients 0..2
    vec3 c = SH_C1 * (-y * s0.xyz + z * vec3(s0.w, s1.xy) - x * vec3(s1.zw, s2.x));
    if (degree < 2) return c;
    vec4 s3 = texelFetch(u_sh, b + ivec2(3, 0), 0);
    vec4 s4 = texelFetch(u_sh, b + ivec2(4, 0), 0);
    vec4 s5 = texelFetch(u_sh, b + ivec2(5, 0), 0);
    float xx = x * x, yy = y * y, zz = z * z;
    float xy = x * y, yz = y * z, xz = x * z;
    // band 2: coefficients 3..7
    c += SH_C2_0 * xy * s2.yzw
       + SH_C2_1 * yz * s3.xyz
       + SH_C2_2 * (2.0 * zz - xx - yy) * vec3(s3.w, s4.xy)
       + SH_C2_3 * xz * vec3(s4.zw, s5.x)
       + SH_C2_4 * (xx - yy) * s5.yzw;
    if (degree < 3) return c;
    vec4 s6 = texelFetch(u_sh, b + ivec2(6, 0), 0);
    vec4 s7 = texelFetch(u_sh, b + ivec2(7, 0), 0);
    vec4 s8 = texelFetch(u_sh, b + ivec2(8, 0), 0);
    vec4 s9 = texelFetch(u_sh, b + ivec2(9, 0), 0);
    vec4 s10 = texelFetch(u_sh, b + ivec2(10, 0), 0);
    vec4 s11 = texelFetch(u_sh, b + ivec2(11, 0), 0);
    // band 3: coefficients 8..14
    c += SH_C3_0 * y * (3.0 * xx - yy) * s6.xyz
       + SH_C3_1 * xy * z * vec3(s6.w, s7.xy)
       + SH_C3_2 * y * (4.0 * zz - xx - yy) * vec3(s7.zw, s8.x)
       + SH_C3_3 * z * (2.0 * zz - 3.0 * xx - 3.0 * yy) * s8.yzw
       + SH_C3_4 * x * (4.0 * zz - xx - yy) * s9.xyz
       + SH_C3_5 * z * (xx - yy) * vec3(s9.w, s10.xy)
       + SH_C3_6 * x * (xx - 3.0 * yy) * vec3(s10.zw, s11.x);
    return c;
}

void cull() {
    gl_Position = vec4(0.0, 0.0, 2.0, 1.0);  // outside the clip volume
    v_color = vec4(0.0);
    v_pos = vec2(0.0);
}

void main() {
    int i = int(a_index);
    ivec2 base = ivec2((i % 1024) * 4, i / 1024);
    vec4 t0 = texelFetch(u_data, base, 0);
    vec4 t1 = texelFetch(u_data, base + ivec2(1, 0), 0);
    vec4 t2 = texelFetch(u_data, base + ivec2(2, 0), 0);
    vec4 t3 = texelFetch(u_data, base + ivec2(3, 0), 0);

    vec4 cam = u_view * vec4(t0.xyz, 1.0);
    float z = cam.z;
    if (z < u_near) { cull(); return; }

    mat3 Sigma = mat3(t1.x, t1.y, t1.z,
                      t1.y, t1.w, t2.x,
                      t1.z, t2.x, t2.y);
    // Clamp the point to 1.3x the field of view for the Jacobian (gsplat / INRIA).
    vec2 tlim = 1.3 * 0.5 * u_viewport / u_focal;
    vec2 txy = clamp(cam.xy / z, -tlim, tlim) * z;
    mat3 J = mat3(u_focal.x / z, 0.0, 0.0,
                  0.0, u_focal.y / z, 0.0,
                  -u_focal.x * txy.x / (z * z), -u_focal.y * txy.y / (z * z), 0.0);
    mat3 M = J * mat3(u_view);
    mat3 C = M * Sigma * transpose(M);

    float a = C[0][0] + 0.3;
    float b = C[0][1];
    float c = C[1][1] + 0.3;
    float opacity = t0.w;
    if (u_antialiased) {
        float det_blur = a * c - b * b;
        float det = (a - 0.3) * (c - 0.3) - b * b;
        opacity *= sqrt(max(det / max(det_blur, 1e-12), 0.0));
    }
    float mid = 0.5 * (a + c);
    float r = length(vec2(0.5 * (a - c), b));
    float l1 = mid + r;
    float l2 = max(mid - r, 0.1);
    vec2 axis = abs(b) < 1e-9 ? (a >= c ? vec2(1.0, 0.0) : vec2(0.0, 1.0))
                              : normalize(vec2(b, l1 - a));
    float s1 = min(K_SIGMA * sqrt(l1), 4096.0);
    float s2 = min(K_SIGMA * sqrt(l2), 4096.0);

    vec2 center = u_focal * cam.xy / z;   // pixels from the image centre, y down
    if (any(greaterThan(abs(center) - s1, 0.5 * u_viewport))) { cull(); return; }

    vec2 p = center + a_corner.x * s1 * axis + a_corner.y * s2 * vec2(-axis.y, axis.x);
    gl_Position = vec4(p.x / (0.5 * u_viewport.x), -p.y / (0.5 * u_viewport.y), 0.0, 1.0);
    v_pos = a_corner * K_SIGMA;
    vec3 rgb = t3.rgb;
    if (u_sh_degree > 0) {
        vec3 dir = t0.xyz - u_cam_pos;
        float len = length(dir);
        rgb += sh_bands(i, len > 0.0 ? dir / len : vec3(0.0), u_sh_degree);
    }
    if (t3.w > 0.5) rgb = mix(max(rgb, vec3(0.0)), vec3(1.0, 0.35, 0.05), 0.7);  // selected
    v_color = vec4(max(rgb, vec3(0.0)), opacity);
}
