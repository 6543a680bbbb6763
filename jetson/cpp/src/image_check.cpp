// Prints the size and a checksum of a gray image (or of a .raw/.bin camera buffer: its byte count and byte sum) as
// edgefold_infer would read it (tested against Python).
#include <cstdint>
#include <cstdio>
#include <exception>
#include <string>

#include "edgefold/image.hpp"

int main(int argc, char** argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: edgefold_image_check IMAGE.pgm|IMAGE.png|FRAME.raw|FRAME.bin\n");
        return 2;
    }
    try {
        const std::string path = argv[1];
        if (edgefold::is_raw_buffer(path)) {
            const auto bytes = edgefold::read_bytes(path);
            std::uint64_t sum = 0;
            for (auto b : bytes) sum += b;
            std::printf("%zu %llu\n", bytes.size(), static_cast<unsigned long long>(sum));
            return 0;
        }
        const auto img = edgefold::read_gray(argv[1]);
        std::uint64_t sum = 0;
        for (auto p : img.pixels) sum += p;
        std::printf("%d %d %llu\n", img.height, img.width, static_cast<unsigned long long>(sum));
        return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "edgefold_image_check: %s\n", e.what());
        return 2;
    }
}
