// Gray images without OpenCV: binary PGM (P5, 8 or 16 bit) always, PNG when built with libpng.
#pragma once

#include <cstdint>
#include <fstream>
#include <iterator>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#ifdef EDGEFOLD_WITH_PNG
#include <png.h>
#endif

namespace edgefold {

inline bool ends_with(const std::string& s, const std::string& tail) {
    return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

// A camera buffer file: its bytes go into an engine built with --pixel-format as they are.
inline bool is_raw_buffer(const std::string& path) { return ends_with(path, ".raw") || ends_with(path, ".bin"); }

// A file's bytes (a camera buffer: .raw / .bin).
inline std::vector<std::uint8_t> read_bytes(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    if (!f) throw std::runtime_error(path + ": cannot open");
    return std::vector<std::uint8_t>((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

struct GrayImage {
    int height = 0;
    int width = 0;
    std::vector<std::uint8_t> pixels;  // row-major, height * width
};

namespace detail {
inline std::string next_token(std::istream& in) {
    std::string token;
    while (in >> token) {
        if (token[0] == '#') {  // comment to end of line
            std::string rest;
            std::getline(in, rest);
            continue;
        }
        return token;
    }
    throw std::runtime_error("truncated PGM header");
}
}  // namespace detail

inline GrayImage read_pgm(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw std::runtime_error(path + ": cannot open");
    if (detail::next_token(in) != "P5") throw std::runtime_error(path + ": not a binary PGM (P5)");
    GrayImage img;
    img.width = std::stoi(detail::next_token(in));
    img.height = std::stoi(detail::next_token(in));
    const int maxval = std::stoi(detail::next_token(in));
    in.get();  // the single whitespace before the raster
    if (img.width <= 0 || img.height <= 0 || img.width > 65536 || img.height > 65536 || maxval <= 0 || maxval > 65535)
        throw std::runtime_error(path + ": implausible PGM header");
    const std::size_t n = static_cast<std::size_t>(img.width) * img.height;
    img.pixels.resize(n);
    if (maxval < 256) {
        in.read(reinterpret_cast<char*>(img.pixels.data()), static_cast<std::streamsize>(n));
    } else {  // 16-bit big endian, scaled to 8 bit
        std::vector<std::uint8_t> raw(2 * n);
        in.read(reinterpret_cast<char*>(raw.data()), static_cast<std::streamsize>(raw.size()));
        for (std::size_t i = 0; i < n; ++i)
            img.pixels[i] = static_cast<std::uint8_t>(((raw[2 * i] << 8) | raw[2 * i + 1]) * 255 / maxval);
    }
    if (!in) throw std::runtime_error(path + ": truncated PGM raster");
    return img;
}

#ifdef EDGEFOLD_WITH_PNG
inline GrayImage read_png(const std::string& path) {
    png_image png{};
    png.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_file(&png, path.c_str())) throw std::runtime_error(path + ": " + png.message);
    png.format = PNG_FORMAT_GRAY;
    GrayImage img;
    img.width = static_cast<int>(png.width);
    img.height = static_cast<int>(png.height);
    img.pixels.resize(PNG_IMAGE_SIZE(png));
    if (!png_image_finish_read(&png, nullptr, img.pixels.data(), 0, nullptr)) {
        png_image_free(&png);
        throw std::runtime_error(path + ": " + png.message);
    }
    return img;
}
#endif

inline GrayImage read_gray(const std::string& path) {
    const auto dot = path.rfind('.');
    const std::string ext = dot == std::string::npos ? "" : path.substr(dot + 1);
    if (ext == "png" || ext == "PNG") {
#ifdef EDGEFOLD_WITH_PNG
        return read_png(path);
#else
        throw std::runtime_error(path + ": built without libpng; convert to PGM or rebuild with libpng-dev");
#endif
    }
    return read_pgm(path);
}

}  // namespace edgefold
